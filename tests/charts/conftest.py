import functools

import kubernetes_validate.utils

# kubernetes_validate.validate reads its schema files (the definitions file is megabytes) on every call;
# the files never change during a run, so read each once. Validation itself is unchanged.
if not hasattr(kubernetes_validate.utils.schema_contents, "cache_info"):
    kubernetes_validate.utils.schema_contents = functools.cache(kubernetes_validate.utils.schema_contents)
