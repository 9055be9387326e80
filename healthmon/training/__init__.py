"""healthmon.training"""
