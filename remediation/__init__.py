"""remediation: from GPU and training alerts to safe, audited actions.

`gpulens remediate serve` receives Alertmanager webhooks (`server`), matches them against a policy
(`policy`), and the engine (`engine`) runs the policy's actions (`actions/`) behind the safety rails
(`safety`), writing every decision to the audit log (`audit`) before acting on it. AWS Lambda runs
the same engine through `gpulens.remediation.lambda_handler.handler`.
"""
