# lme4's drop1(fit, test = "Chisq") on ML fits, for tests/test_drop1.py.
# Run from the repository root:  Rscript tests/reference/drop1/drop1.R
suppressPackageStartupMessages({ library(lme4); library(jsonlite) })
ss <- read.csv("lmm/data/sleepstudy.csv"); ss$Subject <- factor(ss$Subject)
cake <- read.csv("lmm/data/cake.csv")
cake$recipe <- factor(cake$recipe); cake$replicate <- factor(cake$replicate); cake$temperature <- factor(cake$temperature)
one <- function(formula, data) {
  fit <- lmer(as.formula(formula), data = data, REML = FALSE)
  d <- drop1(fit, test = "Chisq")
  list(formula = formula, rows = rownames(d), npar = d$npar, AIC = d$AIC, LRT = d$LRT, p = d[["Pr(Chi)"]])
}
out <- list(
  versions = list(lme4 = as.character(packageVersion("lme4"))),
  sleepstudy = one("Reaction ~ Days + (Days | Subject)", ss),
  cake_additive = one("angle ~ recipe + temperature + (1 | recipe:replicate)", cake),
  cake_interaction = one("angle ~ recipe * temperature + (1 | recipe:replicate)", cake)
)
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE, na = "null"), "tests/reference/drop1/drop1.json")
