//! The custom resource types of `escoperator.dev/v1alpha1`; the CRDs in `crds/` are generated from them.
