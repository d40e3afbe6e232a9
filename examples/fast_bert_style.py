"""The common fast-bert example, unchanged except for the import lines, the paths and the model name.

fast-bert users: replace `from fast_bert.data_cls import BertDataBunch` / `from fast_bert.learner_cls import
BertLearner` / `from fast_bert.metrics import accuracy` by the bertlearn lines below and keep the rest.
Here it trains on TREC-6 questions from ../shared/data (override with DATA_PATH / LABEL_PATH / OUTPUT_DIR).
"""

import logging
import os
from pathlib import Path

import torch
from transformers import AutoTokenizer

from bertlearn import BertDataBunch, BertLearner  # was: from fast_bert.data_cls / fast_bert.learner_cls
from bertlearn.metrics import accuracy  # was: from fast_bert.metrics import accuracy
from bertlearn.model import default_model_path

HERE = Path(__file__).resolve().parent
DATA_PATH = Path(os.environ.get("DATA_PATH", HERE.parent.parent / "shared" / "data" / "trec6"))
LABEL_PATH = Path(os.environ.get("LABEL_PATH", DATA_PATH))
OUTPUT_DIR = Path(os.environ.get("OUTPUT_DIR", "runs/fast_bert_style"))
MODEL = str(default_model_path())  # was: 'bert-base-uncased' (any hub name works when online)

logging.basicConfig(level=logging.INFO)
logger = logging.getLogger()
device_cuda = torch.device("cuda")  # falls back to the CPU with a warning when there is no GPU
metrics = [{"name": "accuracy", "function": accuracy}]

tokenizer = AutoTokenizer.from_pretrained(MODEL)

databunch = BertDataBunch(DATA_PATH, LABEL_PATH,
                          tokenizer,
                          train_file="train.csv",
                          val_file="test.csv",
                          label_file="labels.csv",
                          text_col="text",
                          label_col="label",
                          bs=64,
                          maxlen=140,
                          multi_gpu=False,
                          multi_label=False,
                          no_cache=True)  # the shared data folder is not ours to write a cache into

learner = BertLearner.from_pretrained_model(databunch,
                                            pretrained_path=MODEL,
                                            metrics=metrics,
                                            device=device_cuda,
                                            logger=logger,
                                            output_dir=OUTPUT_DIR,
                                            finetuned_wgts_path=None,
                                            warmup_steps=500,
                                            multi_gpu=False,
                                            is_fp16=True,
                                            multi_label=False,
                                            logging_steps=50)

learner.fit(int(os.environ.get("EPOCHS", 3)), lr="1e-4", validate=True, schedule_type="warmup_cosine",
            optimizer_type="adamw")
print(learner.validate(quiet=True))
print(learner.predict_batch(["Who wrote Hamlet?", "How far is the moon from Earth?"]))
learner.save_model()
model = learner.model  # a plain Hugging Face model
