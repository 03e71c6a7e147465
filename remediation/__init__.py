"""remediation: from GPU and training alerts to safe, audited actions."""
