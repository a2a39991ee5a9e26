"""Operations around the flows: the local stack supervisor (:mod:`ops.stack`) and serving the
deployments of ``infra/prefect.yaml`` (:mod:`ops.serve`). Nothing below ``flows/`` imports it."""
