"""tooliqa_data: IQA datasets, a synthetic demo set, image loading, SRCC/PLCC metrics and the evaluation runner.

Never imports the agent, tools, rewards or trainer packages: models reach the runner through the :class:`Assessor`
protocol.
"""

from tooliqa_data.assessment import OK, PARSE_FAILURE, AssessedCall, AssessedTurn, Assessment, Assessor, RunMetadata
from tooliqa_data.config import DatasetSpec, EvalConfig, load_specs, parse_dataset_spec
from tooliqa_data.datasets import DATASETS, KADID_SPLITS, AdapterOptions, load_dataset
from tooliqa_data.hidden import SUBSETS, HiddenEvidenceConfig, make_hidden_evidence_set, read_subsets
from tooliqa_data.images import (
    CorruptImageError,
    DecompressionBombError,
    ImageError,
    ImageNotFoundError,
    ImageTooSmallError,
    NotAFileError,
    UnreadableImageError,
    check_image_header,
    encode_png,
    load_image,
)
from tooliqa_data.items import Dataset, IQAItem, LabelError, Problem
from tooliqa_data.metrics import CorrelationReport, correlation_report, krcc, plcc, plcc_logistic, srcc
from tooliqa_data.runner import EvalResult, evaluate
from tooliqa_data.synthetic import DISTORTIONS, level_mos, make_synthetic_set

__all__ = [
    "DATASETS",
    "DISTORTIONS",
    "KADID_SPLITS",
    "OK",
    "PARSE_FAILURE",
    "SUBSETS",
    "AdapterOptions",
    "AssessedCall",
    "AssessedTurn",
    "Assessment",
    "Assessor",
    "CorrelationReport",
    "CorruptImageError",
    "Dataset",
    "DatasetSpec",
    "DecompressionBombError",
    "EvalConfig",
    "EvalResult",
    "HiddenEvidenceConfig",
    "IQAItem",
    "ImageError",
    "ImageNotFoundError",
    "ImageTooSmallError",
    "LabelError",
    "NotAFileError",
    "Problem",
    "RunMetadata",
    "UnreadableImageError",
    "check_image_header",
    "correlation_report",
    "encode_png",
    "evaluate",
    "krcc",
    "level_mos",
    "load_dataset",
    "load_image",
    "load_specs",
    "make_hidden_evidence_set",
    "make_synthetic_set",
    "parse_dataset_spec",
    "plcc",
    "plcc_logistic",
    "read_subsets",
    "srcc",
]
