# syntax=docker/dockerfile:1
#
# Huiliu production image.
#
#   docker build -t huiliu .                       # the application (stage runtime, the default)
#   docker build --target kamailio -t huiliu-sip .  # the SIP front
#
# Why pjsip is built from source here: the PyPI wheel `pjsua2-python` (pjsip 2.15.1) bundles
# OpenSSL 1.0.2k (long out of support, so no trustworthy SIP-TLS/SRTP) and is compiled with pjsua's
# default PJSUA_MAX_CALLS of 4, so one process can hold only 4 concurrent calls. This stage compiles
# the same pjsip release against Debian's OpenSSL 3 with PJSUA_MAX_CALLS raised to 256, builds the
# pjsua2 Python bindings with SWIG, and the runtime stage puts that module in place of the wheel's.

ARG PYTHON_VERSION=3.11

########################################################################################################
# pjsip + pjsua2 Python bindings
########################################################################################################
FROM python:${PYTHON_VERSION}-bookworm AS pjsip

ARG PJSIP_VERSION=2.15.1
# sha256 of the release tarball; set it (--build-arg PJSIP_SHA256=...) to pin the download
ARG PJSIP_SHA256=
ARG DEBIAN_FRONTEND=noninteractive

RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        build-essential ca-certificates curl libopus-dev libssl-dev pkg-config swig uuid-dev \
    && rm -rf /var/lib/apt/lists/* \
    && pip install --no-cache-dir setuptools

WORKDIR /build
RUN curl -fsSL -o pjproject.tar.gz \
        "https://github.com/pjsip/pjproject/archive/refs/tags/${PJSIP_VERSION}.tar.gz" \
    && if [ -n "${PJSIP_SHA256}" ]; then echo "${PJSIP_SHA256}  pjproject.tar.gz" | sha256sum -c -; fi \
    && tar xzf pjproject.tar.gz \
    && rm pjproject.tar.gz

WORKDIR /build/pjproject-${PJSIP_VERSION}

# Capacity of one telephony process. Each call takes an RTP and an RTCP socket, prompt players and
# recorders take conference ports, so the I/O queue (epoll) and the bridge grow with the calls.
COPY <<'EOF' pjlib/include/pj/config_site.h
#define PJSUA_MAX_CALLS            256
#define PJSUA_MAX_PLAYERS          512
#define PJSUA_MAX_RECORDERS        256
#define PJSUA_MAX_CONF_PORTS       1280
#define PJ_IOQUEUE_MAX_HANDLES     2048
EOF

RUN ./configure \
        --prefix=/opt/pjsip \
        --enable-epoll \
        --with-ssl=/usr \
        --disable-sound \
        --disable-video \
        --disable-v4l2 \
        --disable-libyuv \
        --disable-libwebrtc \
        --disable-ffmpeg \
        --disable-openh264 \
        --disable-sdl \
        CFLAGS="-O2 -fPIC" CXXFLAGS="-O2 -fPIC" \
    && make dep \
    && make -j"$(nproc)" \
    && make -C pjsip-apps/src/swig/python \
    && mkdir /out \
    && cp pjsip-apps/src/swig/python/pjsua2.py /out/ \
    && find pjsip-apps/src/swig/python/build -name '_pjsua2*.so' -exec cp {} /out/ \; \
    && strip --strip-unneeded /out/_pjsua2*.so \
    && ldd /out/_pjsua2*.so | grep -q 'libssl\.so\.3' \
    && ls -l /out

########################################################################################################
# SIP front: Debian's Kamailio 5.6 (dispatcher, pike, registrar). The config is mounted at run time
# (docker-compose.yml); a copy is baked in so the image also runs on its own.
########################################################################################################
FROM debian:bookworm-slim AS kamailio

ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
    && apt-get install -y --no-install-recommends kamailio \
    && rm -rf /var/lib/apt/lists/* \
    && (id kamailio >/dev/null 2>&1 || useradd --system --user-group --no-create-home kamailio)

WORKDIR /srv/huiliu
COPY telephony/kamailio/ telephony/kamailio/
USER kamailio
EXPOSE 5060/udp 5060/tcp
ENTRYPOINT ["kamailio", "-DD", "-E", "-m", "256", "-M", "32", "-w", "/srv/huiliu", \
            "-f", "/srv/huiliu/telephony/kamailio/kamailio.cfg"]

########################################################################################################
# Application: huiliu web | telephony | worker | beat | migrate ...
########################################################################################################
FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime

ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
    && apt-get install -y --no-install-recommends espeak-ng sox libopus0 libssl3 libuuid1 kamailio \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /srv/huiliu --no-create-home huiliu \
    && install -d -o huiliu -g huiliu /srv/huiliu /var/lib/huiliu /var/lib/huiliu/recordings

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HUILIU_DATA_DIR=/var/lib/huiliu

WORKDIR /srv/huiliu

# dependencies first (pinned), so code changes do not reinstall them
COPY requirements.lock ./
RUN pip install -r requirements.lock

COPY . /tmp/src
RUN pip install --no-deps /tmp/src && rm -rf /tmp/src

# Swap the wheel's pjsua2 bindings (and its bundled OpenSSL 1.0.2) for the ones built above.
COPY --from=pjsip /out/ /tmp/pjsua2/
RUN set -eu; \
    site="$(python -c 'import sysconfig; print(sysconfig.get_paths()["platlib"])')"; \
    if [ ! -f "$site/pjsua2/pjsua2.py" ]; then \
        echo "pjsua2-python is not installed: requirements.lock must pin it" >&2; exit 1; \
    fi; \
    rm -rf "$site"/pjsua2/_pjsua2*.so "$site/pjsua2/pjsua2.py" "$site/pjsua2_python.libs"; \
    cp /tmp/pjsua2/pjsua2.py /tmp/pjsua2/_pjsua2*.so "$site/pjsua2/"; \
    rm -rf /tmp/pjsua2

# Fail the build unless one process really holds 256 concurrent calls (the PyPI wheel stops at 4
# with PJ_ETOOMANY).
RUN python - <<'EOF'
import os
import pjsua2 as pj

WANT = 256
ep = pj.Endpoint()
ep.libCreate()
cfg = pj.EpConfig()
cfg.uaConfig.maxCalls = WANT
cfg.uaConfig.threadCnt = 0
cfg.uaConfig.mainThreadOnly = True
cfg.logConfig.level = 0
cfg.logConfig.consoleLevel = 0
ep.libInit(cfg)
ep.audDevManager().setNullDev()
tcfg = pj.TransportConfig()
tcfg.boundAddress = "127.0.0.1"
ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tcfg)
ep.libStart()
acfg = pj.AccountConfig()
acfg.idUri = "sip:build-check@127.0.0.1"
acc = pj.Account()
acc.create(acfg)
calls = []
try:
    for _ in range(WANT):
        call = pj.Call(acc)
        call.makeCall("sip:nobody@127.0.0.1:9", pj.CallOpParam(True))
        calls.append(call)
except pj.Error as exc:
    print(f"pjsua2 holds only {len(calls)} concurrent calls: {exc.reason}", flush=True)
    os._exit(1)
print(f"pjsua2 {ep.libVersion().full}: {len(calls)} concurrent calls", flush=True)
os._exit(0)
EOF

USER huiliu
# The intent model and jieba's compact dictionary, made once into the image (~/.cache/huiliu/nlu, see
# asr.nlu.training and asr.nlu.dictionary): every process that analyses text then loads them without
# importing scikit-learn, and no container trains or builds them at start.
RUN python -c "from asr.nlu import default_analyzer; default_analyzer()"
# 5060: the telephony node's Kamailio (in front of its workers on 5070, 5071, …)
EXPOSE 8080 5060/udp 5060/tcp 5070/udp 5070/tcp
ENTRYPOINT ["huiliu"]
CMD ["web"]
