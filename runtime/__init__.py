"""Code that AWS runs: Lambda handlers (boto3 and the standard library only)."""
