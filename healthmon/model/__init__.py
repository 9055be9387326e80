"""healthmon.model"""
