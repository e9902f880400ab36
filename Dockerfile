# BrainScale container: Debian 12 + Python 3.11 + BrainScale installed as a wheel.
#   podman/docker build -t brainscale .                      (CPU torch)
#   ... --build-arg TORCH_VARIANT=cuda                       (CUDA torch from PyPI)
#   ... --build-arg PREFETCH_TEMPLATEFLOW=0                  (offline build)
#   podman build -v /opt/wheels:/wheels-local:ro --build-arg PIP_FIND_LINKS=/wheels-local \
#       --build-arg TORCH_CPU_INDEX= ...                     (torch from a local wheel folder)
#   scripts/build_image.sh does all of this from a clean clone.
# Run:  docker run --rm --read-only --tmpfs /tmp -u $(id -u):$(id -g) \
#         -v /data/bids:/data:ro -v /data/out:/out brainscale /data /out participant
ARG DEBIAN_IMAGE=debian:bookworm-slim

FROM ${DEBIAN_IMAGE} AS build
ARG PIP_CERT=
# PEP 440 version of the source (scripts/build_image.sh derives it from git tags); the
# build context carries no .git, so setuptools-scm is told it.
ARG VERSION=0.0.0+unknown
ENV PIP_CERT=${PIP_CERT} PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
    SETUPTOOLS_SCM_PRETEND_VERSION_FOR_BRAINSCALE=${VERSION}
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/build && /opt/build/bin/pip install --quiet build
COPY scripts/container-constraints.txt /constraints.txt
COPY pyproject.toml README.md LICENSE /src/
COPY bids_app /src/bids_app
COPY workflows /src/workflows
COPY brainscale /src/brainscale
RUN /opt/build/bin/python -m build --wheel --outdir /wheels /src \
 && cp /constraints.txt /wheels/constraints.txt

FROM ${DEBIAN_IMAGE}
ARG PIP_CERT=
# A folder of local wheels (bind-mounted at build time) that pip searches first.
ARG PIP_FIND_LINKS=
ARG TORCH_VERSION=2.13.0
# cpu: the CPU-only wheel; cuda: PyPI's default build with CUDA libraries.
# boto3 is installed too: s3:// inputs and outputs (AWS Batch).
ARG TORCH_VARIANT=cpu
ARG TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu
ARG PREFETCH_TEMPLATEFLOW=1
ARG VERSION=unknown
ENV PIP_CERT=${PIP_CERT} PIP_FIND_LINKS=${PIP_FIND_LINKS} \
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
    PATH=/opt/venv/bin:${PATH} \
    TEMPLATEFLOW_HOME=/opt/templateflow \
    TEMPLATEFLOW_AUTOUPDATE=0 \
    NUMBA_CACHE_DIR=/tmp/.numba \
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
    elif [ "$TORCH_VARIANT" = "cpu" ]; then pip install --quiet "torch==${TORCH_VERSION}"; \
    else PIP_FIND_LINKS= pip install --quiet "torch==${TORCH_VERSION}"; fi \
 && pip install --quiet -c /wheels/constraints.txt /wheels/*.whl boto3 && rm -rf /wheels
# The TemplateFlow skeleton is always initialised (offline, from the package) so that a
# read-only container never tries to write it at import time.
RUN mkdir -p "$TEMPLATEFLOW_HOME" \
 && python -c "import templateflow.api as tf; print(len(tf.templates()), 'TemplateFlow templates')" \
 && if [ "$PREFETCH_TEMPLATEFLOW" = "1" ]; then python -c "\
from templateflow import api; \
[api.get('MNI152NLin2009cAsym', resolution=2, atlas='Schaefer2018', desc=f'{n}Parcels7Networks', suffix='dseg', extension=e) for n in (200, 400) for e in ('.nii.gz', '.tsv')]"; fi \
 && chmod -R a+rX "$TEMPLATEFLOW_HOME"
RUN useradd --create-home --uid 1000 brainscale && echo "$VERSION" > /version \
 && python -c "import brainscale.bids_app, brainscale.workflows, torch; print('torch', torch.__version__)"
ENV PIP_FIND_LINKS= PIP_CERT=
USER brainscale
WORKDIR /tmp
ENTRYPOINT ["run.py"]
