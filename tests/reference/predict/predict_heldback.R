# lme4's predictions on rows held back from the fit, for tests/test_predict_lme4.py.
# Run from the repository root:  Rscript tests/reference/predict/predict_heldback.R
# Needs the bundled CSVs (lmm/data) and R with lme4 and jsonlite.
suppressPackageStartupMessages({ library(lme4); library(jsonlite) })
out <- list(versions = list(R = R.version.string, lme4 = as.character(packageVersion("lme4"))))

# sleepstudy: fit on days 0-7 of subjects other than 372; predict days 8-9 of every
# subject (372 is a new level) with all, none and the Subject random effects
ss <- read.csv("lmm/data/sleepstudy.csv")
ss$Subject <- factor(ss$Subject)
train <- ss[ss$Days <= 7 & ss$Subject != "372", ]
test <- ss[ss$Days >= 8, ]
fit <- lmer(Reaction ~ Days + (Days | Subject), data = train, REML = TRUE)
out$sleepstudy <- list(
  formula = "Reaction ~ Days + (Days | Subject)", REML = TRUE,
  train_rule = "Days <= 7 and Subject != 372", test_rule = "Days >= 8",
  test_subject = as.character(test$Subject), test_days = test$Days,
  criterion = unname(getME(fit, "devcomp")$cmp[["REML"]]),
  full = unname(predict(fit, newdata = test, allow.new.levels = TRUE)),
  population = unname(predict(fit, newdata = test, re.form = NA)),
  subject_only = unname(predict(fit, newdata = test, re.form = ~ (Days | Subject), allow.new.levels = TRUE))
)

# Penicillin: fit without plate "x"'s rows in sample F; predict them with each subset of terms
pen <- read.csv("lmm/data/Penicillin.csv")
pen$plate <- factor(pen$plate); pen$sample <- factor(pen$sample)
held <- pen$plate %in% c("a", "b") & pen$sample == "F"
fit2 <- lmer(diameter ~ 1 + (1 | plate) + (1 | sample), data = pen[!held, ], REML = FALSE)
test2 <- pen[held, ]
out$penicillin <- list(
  formula = "diameter ~ 1 + (1 | plate) + (1 | sample)", REML = FALSE,
  held_rule = "plate in (a, b) and sample == F",
  test_plate = as.character(test2$plate), test_sample = as.character(test2$sample),
  criterion = unname(getME(fit2, "devcomp")$cmp[["dev"]]),
  full = unname(predict(fit2, newdata = test2)),
  plate_only = unname(predict(fit2, newdata = test2, re.form = ~ (1 | plate))),
  sample_only = unname(predict(fit2, newdata = test2, re.form = ~ (1 | sample))),
  population = unname(predict(fit2, newdata = test2, re.form = NA))
)
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE), "tests/reference/predict/predict_heldback.json")
