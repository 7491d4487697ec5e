"""The gateway (nginx) template and its renderer; see gateway/README.md."""
