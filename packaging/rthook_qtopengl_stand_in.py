"""PyInstaller runtime hook (build.spec): stand-ins for PySide6.QtOpenGL and
PySide6.QtOpenGLWidgets, which the packaged app leaves out (their bindings are 9 MB).

pyqtgraph imports both when it is imported (PlotCurveItem, PColorMeshItem and
Qt/OpenGLHelpers call ``importlib.import_module(f"{QT_LIB}.QtOpenGL")`` and subclass
``QtOpenGLWidgets.QOpenGLWidget`` at module level), but it uses them only to draw with
OpenGL, which the console never asks for: the Dashboard's charts (desktop/charts.py) are
PlotWidget, PlotDataItem, DateAxisItem and LegendItem on pyqtgraph's default QPainter path
(``useOpenGL`` stays False). So in the packaged app only, importing either module gives an
empty module whose names are placeholder classes: subclassing them and ``isinstance``
checks work (always False), and creating one raises ImportError saying why. This runs only
in the frozen app; from source the real modules are used.
"""

import importlib.abc
import importlib.machinery
import sys

_LEFT_OUT = ("PySide6.QtOpenGL", "PySide6.QtOpenGLWidgets")
_WHY = ("{name} is not included in the packaged RelayDesk: the console draws its charts "
        "without OpenGL (see build.spec and docs/packaging.md)")


def _placeholder(module_name, class_name):
    message = _WHY.format(name=f"{module_name}.{class_name}")

    def __init__(self, *args, **kwargs):
        raise ImportError(message)

    return type(class_name, (), {"__init__": __init__, "__doc__": message,
                                 "__module__": module_name})


class _StandInLoader(importlib.abc.Loader):
    def create_module(self, spec):
        return None  # the default module object

    def exec_module(self, module):
        name = module.__name__
        module.__doc__ = _WHY.format(name=name)
        classes = {}

        def __getattr__(attr):
            if attr.startswith("__"):
                raise AttributeError(attr)
            if attr not in classes:
                classes[attr] = _placeholder(name, attr)
            return classes[attr]

        module.__getattr__ = __getattr__


class _StandInFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname in _LEFT_OUT:
            return importlib.machinery.ModuleSpec(fullname, _StandInLoader())
        return None


sys.meta_path.insert(0, _StandInFinder())
