# The MLflow tracking server of docker/compose.yaml: the official MLflow image
# plus the PostgreSQL driver for the backend store.
#
# The tag must equal the mlflow pin of requirements/constraints.txt, so that the
# server and the clients in the trials run the same MLflow release
# (tests/test_deployment.py checks this).
FROM ghcr.io/mlflow/mlflow:v3.17.2

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MLFLOW_DISABLE_TELEMETRY=true \
    DO_NOT_TRACK=1

# psycopg2 is the driver behind postgresql:// backend store URIs. The server needs
# it and the package does not, so requirements/constraints.txt does not list it.
RUN python -m pip install psycopg2-binary==2.9.13
