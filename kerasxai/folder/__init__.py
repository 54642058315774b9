"""The folder job: a whole folder or data set explained, streamed into a run folder, and its report.

- :mod:`~kerasxai.folder.job`: the job checked once, planned once, one batch explained;
- :mod:`~kerasxai.folder.runner`: ``explain_folder`` and ``explain_dataset`` on this machine;
- :mod:`~kerasxai.folder.ray_runner`: the same job on Ray Data (many GPUs, many machines);
- :mod:`~kerasxai.folder.sources`: the files listed, with ids and true labels;
- :mod:`~kerasxai.folder.runfolder`: the run folder's contract, resuming, the background writer;
- :mod:`~kerasxai.folder.report`: ``report.html`` (its page, style and script in ``report_assets/``).
"""
