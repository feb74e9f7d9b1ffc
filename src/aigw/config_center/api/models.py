"""Models (routes): public names and aliases mapped to weighted, prioritised targets."""

from aigw.config.schema import Model
from aigw.config_center.api.collection import collection_router

router = collection_router(path="/api/v1/models", field="models", what="model", schema=Model)
