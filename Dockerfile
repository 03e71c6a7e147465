# gpulens container image: one image for the node agent, the explorer, the ingest/report jobs and the
# remediation receiver (the Helm chart in helm/gpulens runs it with different arguments).
#
#   docker build -t ghcr.io/gpulens/gpulens:0.1.0 .
#   docker run --rm ghcr.io/gpulens/gpulens:0.1.0 agent --backend sim --host 0.0.0.0
#
# No torch: the agent reads GPUs through NVML (libnvidia-ml.so, injected at run time by the NVIDIA
# container toolkit), and gpulens.trainer, which lives in the training image, imports without torch.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: resolve and install every wheel into a self-contained virtualenv --------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/gpulens
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY gpulens/ gpulens/
COPY collector/ collector/
COPY trainer/ trainer/
COPY attribution/ attribution/
COPY dashboards/ dashboards/
COPY remediation/ remediation/
# A regular (not editable) install: the sources are copied into site-packages, /src is left behind.
# --only-binary: every dependency ships manylinux wheels, so the build needs no compiler either. pip
# goes afterwards; setuptools stays, because dash declares it as a run-time dependency. The core has no
# dependencies (docs/design.md §1): the image names the extra of every component it runs, not torch.
RUN /opt/gpulens/bin/pip install --only-binary=:all: --no-binary=gpulens \
    ".[agent,kubelet,attribution,report,explorer,grafana,remediation,aws,logs]" \
 && /opt/gpulens/bin/python -m compileall -q /opt/gpulens/lib \
 && /opt/gpulens/bin/python -m pip uninstall -y -q pip \
 && /opt/gpulens/bin/gpulens --version

# ---- run: the interpreter, the virtualenv, a non-root user; no pip, no compiler, no sources -----------
FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 65532 gpulens \
 && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin gpulens
COPY --from=build /opt/gpulens /opt/gpulens
ENV PATH=/opt/gpulens/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
USER 65532:65532
WORKDIR /tmp
# 9400 agent /metrics, 8050 explorer, 9095 remediation receiver.
EXPOSE 9400 8050 9095
ENTRYPOINT ["gpulens"]
CMD ["--help"]
