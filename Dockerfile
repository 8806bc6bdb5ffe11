# The service's image: the production server (serve.py: granian) on 0.0.0.0:8000
# (RECSYS_BIND). On every interface the server refuses to start without API
# keys (RECSYS_API_KEYS): create them first, then pass their entries.
#
#   docker build -t recsys .
#   docker run --rm recsys flask --app app create-key --role read
#   docker run --rm -p 8000:8000 -e RECSYS_API_KEYS=read:SHA256HEX \
#       -e RECSYS_DATABASE_URL=postgresql://... recsys
#
# Configuration and secrets come from the environment at run time (see the
# README's configuration table and compose.yaml), never from the image.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The pinned requirements first, so that this layer is rebuilt only when they
# change. Each has a wheel for CPython 3.11 on x86_64 and arm64: no compiler
# in the image, and --only-binary makes a missing wheel an error, not a build.
COPY requirements.txt /tmp/requirements.txt
RUN pip install --only-binary=:all: -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The service runs as a user of its own. The code stays root's (read-only to
# the service); the instance folder (default SQLite store and artifacts) and
# /models (the artifact directory compose shares between servers) are its.
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin recsys
WORKDIR /app
COPY . .
# Bytecode compiled now, as root: the service cannot (and need not) write it.
RUN python -m compileall -q app.py recommendation_system.py recsys \
    && mkdir -p /app/instance /models \
    && chown recsys:recsys /app/instance /models
USER recsys

# A setting like the others (README's configuration table), so -e overrides it.
ENV RECSYS_BIND=0.0.0.0:8000
EXPOSE 8000

# Liveness: the process answers. slim has no curl; python's urllib fails
# (exit status 1) on a refused connection, a timeout or an HTTP error.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=3)"]

# What `make serve` runs: init and the model load once, then granian's workers.
CMD ["python", "serve.py"]
