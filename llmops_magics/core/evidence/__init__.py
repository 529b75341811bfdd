"""What production did, as shadow cases: MLflow traces, evaluation datasets, earlier runs.

- :mod:`.shapes`: a chat request and its answer read from a trace's root span.
- :mod:`.redaction`: the user's hook that scrubs personal data from that text first.
- :mod:`.recorded`: ``Evidence`` (the cases, and the answers recorded for them).
- :mod:`.traces`, :mod:`.datasets`, :mod:`.baseline`: the three sources.
"""
