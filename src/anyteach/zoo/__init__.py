"""Built-in model zoos: recipes that train a diverse set of classifiers, cached and reused.

- `recipe`: what a zoo is made of (`ZooMember`, `TrainRecipe`); `mnist1d`: the MNIST-1D zoo's recipe;
- `zoos`: concrete zoos (`get_zoo`), where their models live, and the `zoo:` model reference;
- `build`: training the missing members in parallel worker processes (`build_zoo`).

`build_zoo(get_zoo("mnist1d"))` trains whatever members are missing (one thread per worker
process) and saves each as an anyteach model under the cache directory; `zoo:mnist1d/<member>`
then resolves to it. `--seed N` builds an independent zoo of the same recipe on a dataset generated
with seed N (`zoo:mnist1d@N/<member>`).

May import: `core`, `models`, `data`.
"""

from .build import PLATEAU_LR, build_zoo, plateau_delta
from .recipe import TrainRecipe, ZooMember
from .zoos import ZOOS, Zoo, get_zoo, list_zoo, parse_zoo_ref, zoo_data, zoo_model_path

__all__ = [
    "PLATEAU_LR",
    "ZOOS",
    "TrainRecipe",
    "Zoo",
    "ZooMember",
    "build_zoo",
    "get_zoo",
    "list_zoo",
    "parse_zoo_ref",
    "plateau_delta",
    "zoo_data",
    "zoo_model_path",
]
