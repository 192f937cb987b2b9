# An image that only carries a generated repository, for the `repository` init container of
# deploy/k8s/base/deployment.yaml. Build from the project root after `adinspect repo build`:
#   docker build -f deploy/k8s/repository.Dockerfile -t adinspect-model-repository:0.1.0 .
FROM busybox:1.36.1
COPY model_repository /model_repository
USER 1000:1000
