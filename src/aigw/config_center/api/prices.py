"""The model price table (USD per million tokens), keyed by public model name."""

from aigw.config.schema import Price
from aigw.config_center.api.collection import collection_router

router = collection_router(
    path="/api/v1/prices", field="prices", what="price", schema=Price, key="model"
)
