# The regaccess operator image: `docker build -t regaccess:0.1.0 .` at the repository root.
# The Helm chart (charts/regaccess) runs it as user 10001 with a read-only root filesystem;
# the entry point is the `regaccess` console script, the chart passes `run`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A fixed numeric user, so that the pod's runAsNonRoot check can verify it.
RUN groupadd --system --gid 10001 regaccess \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin regaccess

WORKDIR /app
# The runtime dependencies only, from their lock (hashes required): no extra, so the demo's
# moto, rich and cryptography stay out (tests/unit/test_lock.py and test_packaging.py check it),
# and an image built on any day has the versions the tests ran with.
COPY requirements/runtime.lock ./requirements/
RUN pip install --require-hashes --no-deps -r requirements/runtime.lock
COPY pyproject.toml README.md ./
COPY controller ./controller
COPY crds ./crds
# The package itself, built with the locked setuptools (no build isolation, no dependencies).
RUN pip install --no-deps --no-build-isolation . && rm -rf /root/.cache

USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["regaccess"]
CMD ["run"]
