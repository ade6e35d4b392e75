# Slim image running the BFF as a non-root user.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service ./service
# service/static/line-auth-bff.js is a link to the JS client's one source.
COPY clients/js ./clients/js
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
COPY --from=build /install /usr/local
RUN useradd --system --uid 10001 --no-create-home bff
USER bff
EXPOSE 8000 9100
ENV BFF_ENV=production
CMD ["line-auth-bff", "serve", "--host", "0.0.0.0", "--port", "8000"]
