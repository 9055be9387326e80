"""Preventive advice: rules as data (``rules.toml``), the engine that fires them with the
values that fired them, and the clinician's decision on each draft."""

from healthmon.advice.engine import Advice, AdviceResult, PatientFindings, Trigger, evaluate
from healthmon.advice.rules import AdviceError, Rule, load_rules, parse_rules

__all__ = ["Advice", "AdviceError", "AdviceResult", "PatientFindings", "Rule", "Trigger", "evaluate", "load_rules",
           "parse_rules"]
