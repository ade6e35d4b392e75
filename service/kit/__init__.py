"""Leaves with no dependency inside the service: the error catalogue (`errors`), random ids
and the AES-GCM envelope (`crypto`), the clock type (`clock`), URL rules (`urls`), shared
response shapes (`responses`)."""
