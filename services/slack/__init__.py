"""The Slack-compatible facade: Slack's Web API at ``/api/<method>`` and Socket Mode at
``/slack/socket``, over Parley's domain actions (see docs/slack-compat.md)."""
