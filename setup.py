"""Maps the component folders at the repository root to sub-packages of `gpulens` (docs/design.md §1).

setuptools' `package-dir` cannot glob sub-packages of a renamed folder, so they are listed here;
editable installs (`pip install -e .`) honour the same mapping.
"""

from setuptools import find_packages, setup

ROOTS = {
    "gpulens": "gpulens",
    "gpulens.collector": "collector",
    "gpulens.trainer": "trainer",
    "gpulens.attribution": "attribution",
    "gpulens.dashboards": "dashboards",
    "gpulens.remediation": "remediation",
}

packages: list[str] = []
package_dir: dict[str, str] = {}
for package, folder in ROOTS.items():
    package_dir[package] = folder
    packages.append(package)
    packages.extend(f"{package}.{sub}" for sub in find_packages(folder))

setup(packages=packages, package_dir=package_dir)
