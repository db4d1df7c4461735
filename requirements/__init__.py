"""Requirements: facts both the constructs and workload code that must meet them and the checks
that judge them read, and that neither owns. Side-effect free; imports nothing of the project."""
