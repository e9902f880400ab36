# BrainScale container: Debian 12 + Python 3.11 + BrainScale installed as a wheel.
#   podman/docker build -t brainscale .                      (CPU torch)
#   ... --build-arg TORCH_VARIANT=cuda                       (CUDA torch from PyPI)
#   ... --build-arg PREFETCH_TEMPLATEFLOW=0                  (offline build)
# Run:  docker run --rm --read-only --tmpfs /tmp -u $(id -u):$(id -g) \
#         -v /data/bids:/data:ro -v /data/out:/out brainscale /data /out participant
ARG DEBIAN_IMAGE=debian:bookworm-slim

FROM ${DEBIAN_IMAGE} AS build
ARG PIP_CERT=
ENV PIP_CERT=${PIP_CERT} PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/build && /opt/build/bin/pip install --quiet build
COPY pyproject.toml README.md LICENSE /src/
COPY bids_app /src/bids_app
COPY workflows /src/workflows
RUN /opt/build/bin/python -m build --wheel --outdir /wheels /src

FROM ${DEBIAN_IMAGE}
ARG PIP_CERT=
ARG TORCH_VERSION=2.13.0
# cpu: the CPU-only wheel; cuda: PyPI's default build with CUDA libraries.
ARG TORCH_VARIANT=cpu
ARG TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu
ARG PREFETCH_TEMPLATEFLOW=1
ARG VERSION=unknown
ENV PIP_CERT=${PIP_CERT} PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
    PATH=/opt/venv/bin:${PATH} \
    TEMPLATEFLOW_HOME=/opt/templateflow \
    HOME=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib \
    XDG_CACHE_HOME=/tmp/.cache \
    NIPYPE_NO_ET=1 \
    MPLBACKEND=Agg \
    PYTHONDONTWRITEBYTECODE=1 \
    BRAINSCALE_CONTAINER_TAG=${VERSION}
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /wheels /wheels
RUN python3 -m venv /opt/venv \
 && if [ "$TORCH_VARIANT" = "cpu" ] && [ -n "$TORCH_CPU_INDEX" ]; then \
        pip install --quiet "torch==${TORCH_VERSION}" --index-url "$TORCH_CPU_INDEX" \
          --extra-index-url https://pypi.org/simple; \
    else pip install --quiet "torch==${TORCH_VERSION}"; fi \
 && pip install --quiet /wheels/*.whl && rm -rf /wheels
RUN mkdir -p "$TEMPLATEFLOW_HOME" \
 && if [ "$PREFETCH_TEMPLATEFLOW" = "1" ]; then python -c "\
from templateflow import api; \
[api.get('MNI152NLin2009cAsym', resolution=2, atlas='Schaefer2018', desc=f'{n}Parcels7Networks', suffix='dseg', extension=e) for n in (200, 400) for e in ('.nii.gz', '.tsv')]"; fi \
 && chmod -R a+rX "$TEMPLATEFLOW_HOME"
RUN useradd --create-home --uid 1000 brainscale && echo "$VERSION" > /version
USER brainscale
WORKDIR /tmp
ENTRYPOINT ["run.py"]
