"""The version of flowmatch, in one place: ``flowmatch.__version__``, ``flowmatch --version`` and the
package metadata (pyproject.toml reads it: ``[tool.setuptools.dynamic] version``) all come from here."""

__all__ = ["VERSION"]

#: This release (CHANGELOG.md's newest entry).
VERSION = "0.2.0"
