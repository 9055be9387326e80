"""Vital signs: transparent clinical scores (NEWS2, blood-pressure category).

    from healthmon.vitals import score_news2, classify_bp
    score_news2(respiration_rate=22, spo2=95, on_oxygen=False, systolic_bp=105, heart_rate=112,
                consciousness="A", temperature=38.4)
"""

from healthmon.vitals.bp import BPCategory, average_readings, classify_bp, esc_grade
from healthmon.vitals.news2 import NEWS2_BANDS, News2, score_news2

__all__ = ["BPCategory", "NEWS2_BANDS", "News2", "average_readings", "classify_bp", "esc_grade", "score_news2"]
