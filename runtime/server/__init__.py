"""alexnet-serve: an artifact behind the Open Inference Protocol on KServe's model server.

protocol.py and batcher.py are framework-free (numpy, asyncio); model.py, app.py and cli.py
import kserve (the [serve] extra), so only the server process imports them.
"""
