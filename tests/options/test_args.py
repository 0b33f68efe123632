"""Command-line options: the authors' spellings and defaults, booleans, validation."""
import pytest

from args import get_args_parser, parse_args

AUTHORS_DEFAULTS = {"gpu_id": "0", "if_download": False, "data_dir": "./data", "batch_size": 256,
                    "num_workers": 12, "input_size": 32, "N_books": 8, "N_words": 16, "L_word": 16,
                    "soft_quantization_scale": 5.0, "contrastive_temperature": 0.5, "num_cls": 10,
                    "eval_epoch": 100, "output_dir": ".", "Top_N": 1000}
NEW_DEFAULTS = {"epochs": 2000, "lr": 3e-4, "weight_decay": 1e-5, "device": "auto", "resume": None,
                "eval_only": False, "lr_schedule": "authors", "dataset": "cifar10",
                "images_in_memory_gb": 8.0}


def test_defaults():
    args = vars(parse_args([]))
    for name, value in {**AUTHORS_DEFAULTS, **NEW_DEFAULTS}.items():
        assert args[name] == value, name
        assert type(args[name]) is type(value), name


def test_authors_command_parses():
    args = parse_args("--gpu_id=0 --batch_size=256 --N_books=8 --N_words=16 --eval_epoch=100".split())
    assert (args.gpu_id, args.batch_size, args.N_books, args.N_words, args.eval_epoch) == ("0", 256, 8, 16, 100)


@pytest.mark.parametrize("argv,expected", [
    (["--if_download=False"], False), (["--if_download", "false"], False), (["--if_download", "0"], False),
    (["--if_download", "no"], False), (["--if_download"], True), (["--if_download=True"], True),
    (["--if_download", "1"], True), (["--if_download=TRUE"], True), ([], False)])
def test_booleans(argv, expected):
    assert parse_args(argv).if_download is expected


@pytest.mark.parametrize("argv,message", [
    (["--N_words", "12"], "power of two"), (["--N_words", "1"], "power of two"),
    (["--batch_size", "1"], "at least 2"), (["--N_books", "0"], "positive"),
    (["--L_word", "-3"], "positive"), (["--Top_N", "-1"], "zero or positive"),
    (["--if_download", "maybe"], "boolean"), (["--gpu_id", "x"], "device index"),
    (["--eval_only"], "needs --resume"), (["--lr", "-1"], "zero or positive"),
    (["--images_in_memory_gb", "-1"], "zero or positive"), (["--dataset", "imagenet"], "invalid choice")])
def test_bad_values_exit_2_with_message(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        parse_args(argv)
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_every_option_has_help():
    for action in get_args_parser()._actions:
        assert action.help and len(action.help) > 15, action.dest


def test_what_ran_names_the_released_scripts_run_and_an_earlier_head():
    """The start line, retrieval.json's text and the results table tell the two named runs
    apart: the method (default) and the released script's (--freeze_bn_after_eval)."""
    from spq.options.values import what_ran, what_ran_text
    assert what_ran_text(what_ran({})) == "cifar_resnet18 at 32 px (crop), fp32"
    assert what_ran_text(what_ran({"freeze_bn_after_eval": True, "head": "first"})) == \
        "cifar_resnet18 at 32 px (crop), fp32, head first, frozen BN"
