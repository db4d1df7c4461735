"""Log retention facts shared by the environment model and the layers."""

# HIPAA 45 CFR 164.316(b)(2)(i): documentation (audit logs included) is retained six years.
# 2192 days is the smallest CloudWatch Logs retention value that covers six years.
HIPAA_MIN_AUDIT_RETENTION_DAYS = 2192

# The only values CloudWatch Logs accepts for a log group's retention (PutRetentionPolicy).
CLOUDWATCH_RETENTION_DAYS = frozenset(
    {
        1,
        3,
        5,
        7,
        14,
        30,
        60,
        90,
        120,
        150,
        180,
        365,
        400,
        545,
        731,
        1096,
        1827,
        2192,
        2557,
        2922,
        3288,
        3653,
    }
)

# Those of six years or more, ascending: the ones an audit log may use.
SIX_YEAR_RETENTION_DAYS = tuple(
    sorted(d for d in CLOUDWATCH_RETENTION_DAYS if d >= HIPAA_MIN_AUDIT_RETENTION_DAYS)
)
