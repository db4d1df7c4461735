"""Quarantines an EC2 instance named in a severe GuardDuty or Security Hub finding."""
