"""fast-bert's README, section by section, run on bertlearn with the import lines changed.

fast-bert users: each `from fast_bert...` line is replaced by its bertlearn line and the README's code is kept
as written. What the README leaves to the reader or cannot run offline is added and marked: the data and output
folders, the model (fast-bert's 'bert-base-uncased' / 'roberta-base'; here the packaged all-MiniLM-L6-v2), the
number of epochs, the `texts` and `device` the language-model section uses without defining, `print`s of the
results, the multi-label metrics of fast-bert's multi-label example, and the `finetuned_wgts_path` hand-off its
README describes in prose. docs/migration.md says what each argument does in bertlearn; the ones without effect
are named once in a FastBertCompatWarning. tests/test_examples.py runs this script.

    python examples/fast_bert_readme.py    # ~10 min on 2 CPU cores: 6 epochs, as the README's code asks
    DATA_PATH=... MULTI_DATA_PATH=... MULTI_LABEL_COLS=a,b,c MODEL=... EPOCHS=1 python examples/fast_bert_readme.py

Without DATA_PATH, the script lays out ROWS (2,000) Rotten Tomatoes training reviews (../shared/data/rt_polarity,
or $BERTLEARN_DATA) in fast-bert's layout (train.csv, val.csv, labels.csv) under OUTPUT_DIR/data; without
MULTI_DATA_PATH, ROWS GoEmotions training comments (goemotions, 28 labels) under OUTPUT_DIR/multi. ROWS bounds the
training sets only: the validation sets are copied whole (1,066 reviews, 5,426 comments) and validated every epoch
at the README's max_seq_length of 512, so a small ROWS still takes minutes on a CPU.
"""

import os
from pathlib import Path

import pandas as pd
import torch

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("BERTLEARN_DATA") or HERE.parent.parent / "shared" / "data")
ROWS = int(os.environ.get("ROWS", 2000))  # training rows taken from ../shared/data when no DATA_PATH is given
OUTPUT_DIR = Path(os.environ.get("OUTPUT_DIR", "runs/fast_bert_readme"))
MODEL = os.environ.get("MODEL") or str(__import__("bertlearn").default_model_path())  # was 'bert-base-uncased'
EPOCHS = int(os.environ.get("EPOCHS", 6))
OUTPUT_DIR.mkdir(parents=True, exist_ok=True)


def fast_bert_layout(source: Path, folder: Path, rows: int) -> Path:
    """train.csv / val.csv / labels.csv as fast-bert's README describes them, from one of ../shared/data's sets."""
    folder.mkdir(parents=True, exist_ok=True)
    train = pd.read_csv(source / "train.csv")
    train.sample(n=min(rows, len(train)), random_state=0).to_csv(folder / "train.csv", index=False)
    pd.read_csv(source / "valid.csv").to_csv(folder / "val.csv", index=False)
    labels = sorted(train["label"].unique()) if "label" in train else [c for c in train.columns if c != "text"]
    (folder / "labels.csv").write_text("\n".join(labels) + "\n")
    return folder


DATA_PATH = Path(os.environ.get("DATA_PATH") or fast_bert_layout(SHARED / "rt_polarity", OUTPUT_DIR / "data", ROWS))
LABEL_PATH = Path(os.environ.get("LABEL_PATH", DATA_PATH))
if os.environ.get("MULTI_DATA_PATH"):
    MULTI_DATA_PATH, MULTI_LABEL_COLS = Path(os.environ["MULTI_DATA_PATH"]), os.environ["MULTI_LABEL_COLS"].split(",")
elif (SHARED / "goemotions").is_dir():
    MULTI_DATA_PATH = fast_bert_layout(SHARED / "goemotions", OUTPUT_DIR / "multi", ROWS)
    MULTI_LABEL_COLS = (MULTI_DATA_PATH / "labels.csv").read_text().split()
else:
    MULTI_DATA_PATH = MULTI_LABEL_COLS = None
CLASSIFICATION_DATA = DATA_PATH  # the language-model section reuses these texts (the README's `texts`)

# ## Text Classification
# ### 1. Create a DataBunch object

from bertlearn import BertDataBunch  # was: from fast_bert.data_cls import BertDataBunch

databunch = BertDataBunch(DATA_PATH, LABEL_PATH,
                          tokenizer=MODEL,
                          train_file='train.csv',
                          val_file='val.csv',
                          label_file='labels.csv',
                          text_col='text',
                          label_col='label',
                          batch_size_per_gpu=16,
                          max_seq_length=512,
                          multi_gpu=True,
                          multi_label=False,
                          model_type='bert')

# ### 2. Create a Learner Object

from bertlearn import BertLearner  # was: from fast_bert.learner_cls import BertLearner
from bertlearn.metrics import accuracy  # was: from fast_bert.metrics import accuracy
import logging

logger = logging.getLogger()
device_cuda = torch.device("cuda")
metrics = [{'name': 'accuracy', 'function': accuracy}]

learner = BertLearner.from_pretrained_model(
                        databunch,
                        pretrained_path=MODEL,
                        metrics=metrics,
                        device=device_cuda,
                        logger=logger,
                        output_dir=OUTPUT_DIR,
                        finetuned_wgts_path=None,
                        warmup_steps=500,
                        multi_gpu=True,
                        is_fp16=True,
                        multi_label=False,
                        logging_steps=50)

# ### 3. Find the optimal learning rate

learner.lr_find(start_lr=1e-5, optimizer_type='lamb')
learner.plot()

# ### 4. Train the model

learner.fit(epochs=EPOCHS,
            lr=6e-5,
            validate=True,  # Evaluate the model after each epoch
            schedule_type="warmup_cosine",
            optimizer_type="lamb")

# ### 5. Save trained model artifacts

learner.save_model()

# ### 6. Model Inference

texts = ['I really love the Netflix original movies',
         'this movie is not worth watching']
predictions = learner.predict_batch(texts)
print("learner.predict_batch:", predictions)  # (added)

from bertlearn import BertClassificationPredictor  # was: from fast_bert.prediction import BertClassificationPredictor

MODEL_PATH = OUTPUT_DIR/'model_out'

predictor = BertClassificationPredictor(
                model_path=MODEL_PATH,
                label_path=LABEL_PATH,  # location for labels.csv file
                multi_label=False,
                model_type='xlnet',
                do_lower_case=False,
                device=None)  # set custom torch.device, defaults to cuda if available

# Single prediction
single_prediction = predictor.predict("just get me result for this text")

# Batch predictions
texts = [
    "this is the first text",
    "this is the second text"
    ]

multiple_predictions = predictor.predict_batch(texts)
print("predictor.predict:", single_prediction)  # (added)
print("predictor.predict_batch:", multiple_predictions)  # (added)

# ## Multi-label classification: labels.csv lists the labels, train.csv has one 0/1 column per label
# (added: the README describes the layout; the metrics are those of fast-bert's multi-label example)

if MULTI_LABEL_COLS:
    from bertlearn.metrics import accuracy_thresh, fbeta, roc_auc  # was: from fast_bert.metrics import ...

    databunch = BertDataBunch(MULTI_DATA_PATH, MULTI_DATA_PATH,
                              tokenizer=MODEL,
                              train_file='train.csv',
                              val_file='val.csv',
                              label_file='labels.csv',
                              text_col='text',
                              label_col=MULTI_LABEL_COLS,
                              batch_size_per_gpu=16,
                              max_seq_length=512,
                              multi_gpu=True,
                              multi_label=True,
                              model_type='bert')

    metrics = []
    metrics.append({'name': 'accuracy_thresh', 'function': accuracy_thresh})
    metrics.append({'name': 'roc_auc', 'function': roc_auc})
    metrics.append({'name': 'fbeta', 'function': fbeta})

    learner = BertLearner.from_pretrained_model(
                            databunch,
                            pretrained_path=MODEL,
                            metrics=metrics,
                            device=device_cuda,
                            logger=logger,
                            output_dir=OUTPUT_DIR / 'multi_label',
                            finetuned_wgts_path=None,
                            warmup_steps=500,
                            multi_gpu=True,
                            is_fp16=True,
                            multi_label=True,
                            logging_steps=50)
    learner.fit(epochs=EPOCHS, lr=6e-5, validate=True, schedule_type="warmup_cosine", optimizer_type="lamb")
    print("multi-label validate:", learner.validate())

# ## Language Model Fine-tuning
# ### 1. Import the necessary libraries

# Language model Databunch
from bertlearn import BertLMDataBunch  # was: from fast_bert.data_lm import BertLMDataBunch
# Language model learner
from bertlearn import BertLMLearner  # was: from fast_bert.learner_lm import BertLMLearner

from pathlib import Path
from box import Box

# ### 2. Define parameters and setup datapaths

# Box is a nice wrapper to create an object from a json dict
args = Box({
    "seed": 42,
    "task_name": 'imdb_reviews_lm',
    "model_name": MODEL,  # was 'roberta-base'
    "model_type": 'roberta',
    "train_batch_size": 16,
    "learning_rate": 4e-5,
    "num_train_epochs": 20,
    "fp16": True,
    "fp16_opt_level": "O2",
    "warmup_steps": 1000,
    "logging_steps": 0,
    "max_seq_length": 512,
    "multi_gpu": True if torch.cuda.device_count() > 1 else False
})

DATA_PATH = OUTPUT_DIR / 'lm_data'  # was Path('../lm_data/')
LOG_PATH = OUTPUT_DIR / 'logs'  # was Path('../logs')
MODEL_PATH = OUTPUT_DIR / 'lm_model_{}'.format(args.model_type)  # was Path('../lm_model_{}/'.format(...))

DATA_PATH.mkdir(exist_ok=True)
MODEL_PATH.mkdir(exist_ok=True)
LOG_PATH.mkdir(exist_ok=True)

# ### 3. Create DataBunch object

texts = pd.read_csv(CLASSIFICATION_DATA / 'train.csv')['text'].tolist()  # (added) the raw texts of your domain
device = device_cuda  # (added) the README uses `device` without defining it

databunch_lm = BertLMDataBunch.from_raw_corpus(
                    data_dir=DATA_PATH,
                    text_list=texts,
                    tokenizer=args.model_name,
                    batch_size_per_gpu=args.train_batch_size,
                    max_seq_length=args.max_seq_length,
                    multi_gpu=args.multi_gpu,
                    model_type=args.model_type,
                    logger=logger)

databunch_lm = BertLMDataBunch(
                    data_dir=DATA_PATH,
                    tokenizer=args.model_name,
                    batch_size_per_gpu=args.train_batch_size,
                    max_seq_length=args.max_seq_length,
                    multi_gpu=args.multi_gpu,
                    model_type=args.model_type,
                    logger=logger)

# ### 4. Create the LM Learner object

learner = BertLMLearner.from_pretrained_model(
                        dataBunch=databunch_lm,
                        pretrained_path=args.model_name,
                        output_dir=MODEL_PATH,
                        metrics=[],
                        device=device,
                        logger=logger,
                        multi_gpu=args.multi_gpu,
                        logging_steps=args.logging_steps,
                        fp16_opt_level=args.fp16_opt_level)

# ### 5. Train the model

learner.fit(epochs=EPOCHS,
            lr=6e-5,
            validate=True,  # Evaluate the model after each epoch
            schedule_type="warmup_cosine",
            optimizer_type="lamb")

# ### 6. Save trained model artifacts

learner.save_model()

# (added) the saved weights start a classifier through finetuned_wgts_path, as the README says in prose
# (fast-bert: pytorch_model.bin)
learner = BertLearner.from_pretrained_model(databunch, pretrained_path=MODEL, metrics=metrics, device=device_cuda,
                                            logger=logger, output_dir=OUTPUT_DIR,
                                            finetuned_wgts_path=MODEL_PATH / 'model_out' / 'model.safetensors',
                                            multi_label=databunch.multi_label)
print("classifier from the adapted LM: ok")  # (added)
