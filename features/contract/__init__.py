"""The data contract: the tables every source is converted into (schema), their validation
and the consent rules built on them."""
