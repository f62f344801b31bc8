# kbroker as an image (not built in CI):
#   docker build -t kbroker .
#   docker run --rm -p 9092:9092 kbroker                       # clients on the host: localhost:9092
#   docker run --rm -p 9092:9092 -e KBROKER_NUM_PARTITIONS=3 kbroker
# Broker configs come from KBROKER_<KEY> variables (log.dirs -> KBROKER_LOG_DIRS) or from the
# command's --override key=value arguments. Another container on a Docker network reaches it by
# its name once KBROKER_ADVERTISED_LISTENERS says so (e.g. PLAINTEXT://kbroker:9092).

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY kbroker ./kbroker
COPY protocol ./protocol
# kbroker's wheel and its dependencies' (binary wheels for this platform).
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --create-home --uid 1000 kbroker \
    && mkdir -p /var/lib/kbroker && chown kbroker /var/lib/kbroker
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels kbroker && rm -rf /wheels
USER kbroker
ENV KBROKER_LISTENERS=PLAINTEXT://0.0.0.0:9092 \
    KBROKER_ADVERTISED_LISTENERS=PLAINTEXT://localhost:9092 \
    KBROKER_LOG_DIRS=/var/lib/kbroker \
    PYTHONUNBUFFERED=1
VOLUME /var/lib/kbroker
EXPOSE 9092
ENTRYPOINT ["kbroker", "serve"]
