# Regard in a container: a Hugging Face Docker Space (python3 scripts/deploy_space.py USER/NAME --docker)
# or any container host. CPU only; the checkpoints come from the build context (checkpoints/).
#   docker build -t regard . && docker run --rm -p 7860:7860 regard     # then open http://127.0.0.1:7860
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GRADIO_ANALYTICS_ENABLED=False

# Hugging Face Docker Spaces run the container as uid 1000; any host gets the same non-root user.
RUN useradd --create-home --uid 1000 user
WORKDIR /home/user/app

# PyTorch's CPU wheel first (the version pinned in requirements.txt): the default PyPI wheel would pull
# gigabytes of CUDA libraries a CPU host never uses. requirements.txt then finds torch satisfied.
COPY requirements.txt ./
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
    && pip install -r requirements.txt

# Only what the app imports and serves (the same files scripts/deploy_space.py uploads).
COPY --chown=user app.py ./
COPY --chown=user model ./model
COPY --chown=user ui ./ui
COPY --chown=user viz ./viz
COPY --chown=user checkpoints ./checkpoints

USER user
EXPOSE 7860
CMD ["python", "app.py", "--host", "0.0.0.0", "--port", "7860"]
