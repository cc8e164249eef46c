"""The embedded world: a procedural town (`town`, `town_props`, `opendrive`), its traffic
(`traffic`), collisions (`collision`) and a software renderer (`render`), needing nothing but this
package. `EmbeddedWorld` (in `backend`) is the `World` they make up."""

from .backend import EmbeddedWorld

__all__ = ["EmbeddedWorld"]
