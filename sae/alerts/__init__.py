"""Alerts: what needs a person, sent by mail and/or webhook, once per standing condition."""
