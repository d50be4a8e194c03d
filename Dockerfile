# LiverRead image: the web app (gunicorn) and the Celery worker run from it.
# On a GPU host `pip install torch==2.13.0` takes PyPI's CUDA build; the code
# picks the GPU when one is visible and the CPU otherwise.

# The viewer bundle (Cornerstone3D + esbuild), built in its own stage: node stays out of the final image.
FROM node:20-slim AS viewer
WORKDIR /static
COPY static/package.json static/package-lock.json static/build.mjs ./
RUN npm ci --no-audit --no-fund
COPY static/src ./src
RUN npm run build

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LIVERREAD_VAR=/var/lib/liverread \
    MEDIA_ROOT=/srv/media

RUN useradd --system --create-home --uid 1000 liverread \
    && mkdir -p /var/lib/liverread /srv/media \
    && chown liverread /var/lib/liverread /srv/media

WORKDIR /app
COPY pyproject.toml README.md ./
COPY inference ./inference
COPY readerstudy ./readerstudy
RUN pip install --no-cache-dir .
COPY . .
COPY --from=viewer /static/dist ./static/dist
# collectstatic needs a key only to import the settings; the real one comes from the environment.
RUN SECRET_KEY=build-only PSEUDONYM_KEY=build-only python manage.py collectstatic --noinput --verbosity 0

USER liverread
EXPOSE 8000
CMD ["gunicorn", "readerstudy.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3", "--access-logfile", "-"]
