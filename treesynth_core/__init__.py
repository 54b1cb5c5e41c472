"""TreeSynth Studio's engine: tree-guided synthetic data generation, headless and UI-agnostic.

The names below and the database schema (see migrations.py) are the supported interface.
"""

from .config import Endpoint, endpoint_from_env
from .errors import (Cancelled, ConfigError, EndpointError, LLMCallError, LLMOutputError, NotFoundError,
                     TreeEditError, TreeImportError, TreeSynthError)
from .export import export_bytes, export_file
from .files import atomic_write
from .generate import generate, plan_generation
from .llm import LLM
from .outcome import Outcome
from .partition import Partitioner, build
from .spec import OutputField, ProjectSpec, RootSplit, Settings, parse_fields
from .store import Store
from .tree import Node, Tree
from .treefile import export_tree, import_tree

__all__ = [
    "Endpoint", "endpoint_from_env", "LLM", "Store", "ProjectSpec", "OutputField", "Settings", "RootSplit",
    "parse_fields", "Node", "Tree", "build", "Partitioner", "generate", "plan_generation", "export_bytes",
    "export_file", "export_tree", "import_tree", "TreeSynthError", "ConfigError", "EndpointError",
    "LLMCallError", "LLMOutputError", "NotFoundError", "TreeEditError", "TreeImportError", "Cancelled", "Outcome",
    "atomic_write",
]

# bring your own data (issue 11): import a dataset, route its rows down the tree, balance the leaves
from .balance import balance, plan_balance  # noqa: E402
from .importer import import_file  # noqa: E402
from .routing import plan_routing, route_samples  # noqa: E402

__all__ += ["import_file", "route_samples", "plan_routing", "balance", "plan_balance"]
