"""Callbacks of a run: Grad-CAM overlays in TensorBoard, and Ctrl-C held back while an epoch's end is written."""

from __future__ import annotations

import os
import signal

import keras
import tensorflow as tf

from kerasxai.train import explaining


class GradCAMImages(keras.callbacks.Callback):
    """Logs Grad-CAM overlays of fixed validation images to TensorBoard at the end of each epoch."""

    def __init__(self, log_dir, model, display, x):
        super().__init__()
        self.writer = tf.summary.create_file_writer(os.path.join(log_dir, "gradcam"))
        self.explained, self.display, self.x = model, display, x

    def on_epoch_end(self, epoch, logs=None):
        images = explaining.gradcam_overlays(self.explained, self.display, self.x)
        with self.writer.as_default():
            tf.summary.image("gradcam_overlays", images, step=epoch, max_outputs=len(images))
        self.writer.flush()


class EpochEndGuard:
    """Holds Ctrl-C back while an epoch's end is written (state, log, checkpoint, TensorBoard), so that an
    interruption never leaves an epoch half recorded: ``opening`` and ``closing`` go around those callbacks."""

    def __init__(self):
        self.pending, self.previous = False, None
        guard = self

        class Opening(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                guard.pending = False
                try:
                    guard.previous = signal.signal(signal.SIGINT, guard._hold)
                except ValueError:  # not the main thread: signals cannot be caught here
                    guard.previous = None

        class Closing(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                guard.release()
                if guard.pending:
                    raise KeyboardInterrupt

        self.opening, self.closing = Opening(), Closing()

    def release(self):
        """Gives Ctrl-C back (also called when ``fit`` ends by an error between the two callbacks)."""
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
            self.previous = None

    def _hold(self, signum, frame):
        self.pending = True
