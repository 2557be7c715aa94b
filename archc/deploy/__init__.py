"""The deploy package's facts, without TVM: what a package folder holds and says (its manifest, README, layout plan)
and the records made from it (profiles). `archc.lower` writes packages and `archc.runtime` loads them; `archc
analyze`, `archc report` and the renderers read these facts without importing TVM or the back end.
"""
