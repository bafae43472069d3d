# The same steps as `make run`, in an image. Web and worker are two containers of this image
# (see docker-compose.yml).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
RUN DJANGO_DEBUG=1 python manage.py collectstatic --noinput -v0
EXPOSE 8000
CMD ["gunicorn", "retailpulse.wsgi", "--bind", "0.0.0.0:8000", "--workers", "1", "--threads", "8"]
