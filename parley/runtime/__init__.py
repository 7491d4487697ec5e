"""Process plumbing shared by every service: consumer loop, relay, HTTP health/metrics,
logging. Engine-agnostic: it talks to engines only through ports."""
