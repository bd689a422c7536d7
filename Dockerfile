# nudgebandit in one image; the entrypoint is `nudge` (consume, serve, loop, export, ...).
#   docker build -t nudgebandit .
#   docker run --rm nudgebandit --help
# compose.yaml runs a Kafka broker, `nudge consume` and `nudge serve` from it. Inside the image
# the config is /etc/nudge/config.yaml (the repository's; mount your own over it) and state
# lives under /var/lib/nudge; every config field can be overridden with
# NUDGE_<SECTION>__<FIELD> (e.g. NUDGE_KAFKA__BOOTSTRAP_SERVERS=kafka:9092).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/nudgebandit
COPY pyproject.toml README.md ./
COPY bandit ./bandit
COPY streams ./streams
COPY replay ./replay
COPY nudge ./nudge
# Vowpal Wabbit comes as a manylinux wheel (x86_64); the service's extras: FastAPI, uvicorn, httpx.
RUN pip install ".[serve]" \
    && useradd --system --uid 10001 --home-dir /var/lib/nudge --shell /usr/sbin/nologin nudge \
    && mkdir -p /etc/nudge /var/lib/nudge/checkpoints /var/lib/nudge/snapshots /var/lib/nudge/spool \
    && chown -R nudge /var/lib/nudge
COPY config.yaml /etc/nudge/config.yaml

# Named volumes mounted on these directories start owned by the `nudge` user.
ENV NUDGE_CHECKPOINT__DIRECTORY=/var/lib/nudge/checkpoints \
    NUDGE_SNAPSHOTS__DIRECTORY=/var/lib/nudge/snapshots \
    NUDGE_SERVE__SPOOL_DIRECTORY=/var/lib/nudge/spool
USER nudge
WORKDIR /var/lib/nudge
EXPOSE 8080
ENTRYPOINT ["nudge"]
CMD ["--help"]
