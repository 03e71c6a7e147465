"""Prometheus recording and alerting rules as code (`gpulens rules build`)."""
