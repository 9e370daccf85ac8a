# One image for every process of the system (web, worker, relay, beat, the sandbox PSP): the command picks which
# (docker-compose.yml, or a deployment's own orchestration; the Procfile lists them).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    # Every process counts into this directory and the web's /metrics adds the counts up (ops/metrics.py).
    # docker-compose.yml shares it between the containers of one host as a volume.
    PROMETHEUS_MULTIPROC_DIR=/run/marketpay/metrics

# The pinned dependencies first, so that a code change does not reinstall them. requirements.lock is the one lock
# of the project, test tools included: the image runs exactly what the tests ran.
RUN python -m venv /opt/venv && pip install --no-cache-dir uv==0.13.8
WORKDIR /app
COPY requirements.lock ./
RUN uv pip sync --no-cache --python /opt/venv/bin/python requirements.lock

COPY . .
# Static files are served by whitenoise from the image. The settings refuse to load without a key; this one only
# lets collectstatic run and is in no running container.
RUN SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput -v0 \
    && useradd --system --uid 10001 --home-dir /app marketpay \
    && mkdir -p /app/var /run/marketpay/metrics \
    && chown -R marketpay /app/var /run/marketpay

USER marketpay
EXPOSE 8000
CMD ["gunicorn", "config.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "2", "--worker-class", "gthread", "--threads", "4", "--access-logfile", "-", "--logger-class", "api.logfilters.MaskingGunicornLogger"]
