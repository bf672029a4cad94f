"""The reproduction of the paper on top of the registration library: its experiments, their records and settings,
the paper's recorded numbers and the authors' defects as named wrappers.

Every name is exported once. The experiments, records, settings and recorded numbers are names of this package
(``paper.compare_projections``, ``paper.SuperresolutionResults``, ``paper.PAPER_SR``): the ``__all__`` of the
modules listed in :data:`API_MODULES`, collected here. What presents them is reached as a module, never as a name
of the package: :mod:`~imreg_lib.paper.tables` (Markdown and text), :mod:`~imreg_lib.paper.figures` (figures,
widgets and players), :mod:`~imreg_lib.paper.report` (the claims), :mod:`~imreg_lib.paper.notebook` (a page's
helpers) and :mod:`~imreg_lib.paper.peers` (the comparison with SimpleITK); :mod:`~imreg_lib.paper.fullscale` is
the command of ``make full-scale``.

The core modules of :mod:`imreg_lib` never import this package.
"""

from . import (
    ad_costs,
    claims,
    defects,
    ensembles,
    figures,
    keynumbers,
    multiscale_runs,
    notebook,
    peers,
    preregistration,
    recorded,
    report,
    results,
    settings,
    superres_runs,
    tables,
)
from .ad_costs import *  # noqa: F403
from .claims import *  # noqa: F403
from .defects import *  # noqa: F403
from .ensembles import *  # noqa: F403
from .keynumbers import *  # noqa: F403
from .multiscale_runs import *  # noqa: F403
from .preregistration import *  # noqa: F403
from .recorded import *  # noqa: F403
from .results import *  # noqa: F403
from .settings import *  # noqa: F403
from .superres_runs import *  # noqa: F403

#: The modules whose names are this package's names.
API_MODULES = (ad_costs, claims, defects, ensembles, keynumbers, multiscale_runs, preregistration, recorded, results,
               settings, superres_runs)
#: The modules reached as modules (``paper.tables.costs_markdown``).
PRESENTATION_MODULES: tuple[str, ...] = ("figures", "notebook", "peers", "report", "tables")

__all__ = ["figures", "notebook", "peers", "report", "tables"]  # PRESENTATION_MODULES
__all__ += sorted({name for module in API_MODULES for name in module.__all__})
