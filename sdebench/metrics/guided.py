"""Guided-cell metrics (class_mass) and the pathwise error path_err (guided cells: against the dopri5 solve of
the guided probability-flow ODE, :mod:`sdebench.guidance`; image cells: against a dopri5 solve with the same
network, :mod:`sdebench.metrics.images`)."""

from __future__ import annotations

from sdebench.guidance import class_mass_columns, path_err_columns

from .images import image_metric
from .registry import GUIDED, Metric, register_metric

__all__ = []


def _class_mass_applies(ctx):
    return True if ctx.guided and not ctx.is_image else "needs a guided cell"


def _class_mass(ctx) -> dict:
    return class_mass_columns(ctx.problem, ctx.sde, ctx.cfg, ctx.x0, ctx.t_end)


def _path_err_applies(ctx):
    if ctx.is_image:
        if getattr(ctx.cfg, "final_denoise", False):
            # the reference is the ODE solution at t_end, not its denoised value
            return "not with final_denoise on image problems"
        return True if ctx.kind == "ode" else "needs a deterministic solver"
    # analytic cells, guided or not (unguided ones only when asked for: it is default for guided cells)
    return True if ctx.spec.deterministic(ctx.options) else "needs a deterministic solver"


def _path_err(ctx) -> dict:
    if ctx.is_image:
        return image_metric(ctx, "path_err")

    return path_err_columns(ctx.problem, ctx.sde, ctx.cfg, ctx.x_T, ctx.x0, ctx.t_end)


def _register() -> None:
    register_metric(Metric("class_mass", "guided cells: fraction of samples the exact classifier puts in the "
                           "target class (+ null)", "target-class mass", _class_mass, applies=_class_mass_applies,
                           has_null=True,
                           columns=("class_masses",), problems="labelled mixtures, guided cells", stage=GUIDED,
                           default_when=lambda ctx: ctx.guided))
    register_metric(Metric("path_err", "ODE solvers: RMS vs a dopri5 solve from the same x_T (images: rtol 1e-8; "
                           "analytic: 1e-10); path_ref_err: its own error",
                           "path error (RMS vs reference)",
                           _path_err, applies=_path_err_applies,
                           columns=("path_err_med", "path_err_max", "ref_nfe", "path_ref_nfe", "path_ref_rtol",
                                    "path_ref_err"),
                           problems="deterministic solvers (default for image problems and guided cells)", stage=GUIDED,
                           default_when=lambda ctx: ctx.is_image or ctx.guided))
